"""``python -m dualsaver.preflight --markdown``: print the rule table (the README's)."""

import sys

from dualsaver.preflight.rules import main

if __name__ == "__main__":
    sys.exit(main())
