"""The update rules, one module each (its name is its option, `optimizer=<name>`, in
conf/optimizer/<name>.yaml). A rule module defines

    Settings                    (optional) its schema, a subclass of config.OptimizerConfig
    check(cfg)                  (optional) raise ConfigError for settings a type cannot refuse
    Rule(settings)              the update written by hand: step(p, grad) changes p in place
    torch_optimizer(settings, params)
                                its torch.optim twin, for the backends where torch computes the
                                gradients; None to have `Rule` update those parameters too
    stable_lr(curvature, settings)
                                the rate above which it diverges on a quadratic loss whose
                                Hessian's largest eigenvalue is `curvature`; None if unknown

The hand-written rules follow the update rules PyTorch documents for torch.optim, so a run can
be checked against PyTorch. They use arithmetic and in-place operators only, so one rule updates
numpy arrays and torch tensors alike, without a host synchronisation and without importing torch.
"""
