"""The one place the process environment is read (12-factor).

Every setting that can differ between a laptop, CI and production comes from here. Development
defaults are safe and need nothing installed; `coalition.settings.production` refuses to start
without the secrets it needs.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]"]),
    TIME_ZONE=(str, "Asia/Kolkata"),
    CONN_MAX_AGE=(int, 600),
)

# A `.env` file beside manage.py is honoured for local overrides; the real environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
