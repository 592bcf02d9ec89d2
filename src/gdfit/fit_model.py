"""The code file of a logged fit, MLflow's "models from code": MLflow copies this file into each
logged model and runs it to load one. What the fit is comes from the model's `model_config`
(see gdfit.fitted); nothing here is imported by gdfit itself."""

from mlflow.models import set_model

from gdfit.fitted import FittedFunction

set_model(FittedFunction())
