"""``python -m seo_core`` runs the ``seo`` command."""

from seo_core.cli import main

main()
