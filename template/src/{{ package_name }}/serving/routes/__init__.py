"""One module per route group, each with its own ``APIRouter``."""
