"""Unbound extension objects; bound to the app in ``create_app`` so nothing imports the app."""

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# The rate limiter is not here: Flask-Limiter keeps its storage and state on the instance, so
# portal/limits.py builds one per app (the test suite builds hundreds of apps).
