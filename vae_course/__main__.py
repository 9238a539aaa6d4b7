"""``python -m vae_course``: the course's command line (see ``vae_course.cli``)."""

import sys

from .cli import main

sys.exit(main())
