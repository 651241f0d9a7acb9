"""`python -m pipelines COMMAND`: the image's ENTRYPOINT (see pipelines/container.py)."""
import sys

from pipelines.container import main

sys.exit(main())
