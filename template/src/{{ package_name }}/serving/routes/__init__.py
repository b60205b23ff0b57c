# Template-owned: `copier update` brings its new versions. See GUIDE.md, "Who owns what".
"""One module per route group, each with its own ``APIRouter``."""
