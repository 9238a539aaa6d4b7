"""``python -m vae_course``: the course's command line (see ``vae_course.tools.cli``)."""

import sys

from .tools.cli import main

sys.exit(main())
