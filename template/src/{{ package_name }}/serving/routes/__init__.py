# Template-owned: `copier update` replaces this file. See GUIDE.md, "Who owns what".
"""One module per route group, each with its own ``APIRouter``."""
