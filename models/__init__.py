"""SQLAlchemy tables. Importing this package registers every table on `Base.metadata`."""

from models.base import Base
from models.companies import Company
from models.documents import Document
from models.simulations import Simulation
from models.users import User
from models.workflows import UserWorkflowHistory, Workflow

__all__ = ["Base", "Company", "Document", "Simulation", "User", "UserWorkflowHistory", "Workflow"]
