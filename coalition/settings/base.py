"""Settings shared by every environment; development defaults live here.

Nothing here needs a server installed: `make run` points `DATABASE_URL` at the embedded
PostgreSQL it starts and the broker defaults to kombu's filesystem transport.
"""

from datetime import timedelta

from csp.constants import NONCE, NONE, SELF

from coalition.env import BASE_DIR, database, env

# The one hard-coded key in the repository, for development only: production refuses it.
DEV_SECRET_KEY = "dev-only-insecure-key-change-me"  # noqa: S105 (marked, refused in production)
SECRET_KEY = env("SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env("DEBUG", default=True)
ALLOWED_HOSTS = env("ALLOWED_HOSTS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "rest_framework_api_key",
    "django_celery_beat",
    "import_export",
    "auditlog",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "coalition",
    "tenants",
    "members",
    "consent",
    "settlement",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Second factor (TOTP): `request.user.is_verified()` (`django_otp`).
    "django_otp.middleware.OTPMiddleware",
    # Staff who need a verified second factor are sent to set it up or to give its code.
    "coalition.admin.second_factor.SecondFactorMiddleware",
    # Puts the staff user on every audit-log row a request writes (`consent/audit.py`).
    "auditlog.middleware.AuditlogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Content-Security-Policy header on every response (django-csp, policy below).
    "csp.middleware.CSPMiddleware",
    # Login throttling (django-axes): last, as its documentation requires.
    "axes.middleware.AxesMiddleware",
]

# django-axes checks every login attempt first; Django's own backend then checks the password.
AUTHENTICATION_BACKENDS = [
    # A request-less authenticate() (a test client's login()) is not counted: no client to lock.
    "coalition.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "coalition.urls"
WSGI_APPLICATION = "coalition.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL only: locks, triggers and constraints must behave the same everywhere.
DATABASES = {
    "default": database(env("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/coalition"))
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = env("TIME_ZONE")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))

# Admin imports: a file awaiting confirmation waits under MEDIA_ROOT/django-import-export/, where
# an erasure can find it; importing needs the model's "add" permission (members.add_member).
IMPORT_EXPORT_TMP_STORAGE_CLASS = "import_export.tmp_storages.MediaStorage"
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
# Exports: the resources neutralise every formula-looking cell themselves (`coalition.csvsafe`,
# a leading apostrophe, read back on import). import-export's own escaping only drops one leading
# "=" ("==1+1" stays a formula; "+", "-", "@" pass): kept on as a second line for any resource
# that forgets, since no cell the resources write starts with "=".
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = True

LOGIN_URL = "admin:login"

# Security headers (production adds HTTPS-only cookies, HSTS and the SSL redirect).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy (django-csp 4). No inline script, style or style attribute anywhere:
# pages load static files, and the rare inline <script>/<style> carries the request's nonce
# (`{{ request.csp_nonce }}`). The API docs (Redoc) build their search index in a Web Worker
# made from a blob: URL, hence `worker-src blob:`; that page alone relaxes styles and images
# (coalition/api/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# Login throttling (django-axes) for the admin's and the portal's sign-in: five failures for one
# username from one address lock that pair out for 15 minutes (429, templates/security/);
# a success resets the count. Staff with `axes.delete_accessattempt` unlock in the admin
# ("Access attempts"), or `manage.py axes_reset_username <name>`. Behind a proxy, set
# TRUSTED_PROXY_COUNT to the number of proxies that append to X-Forwarded-For.
AXES_FAILURE_LIMIT = 5
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "coalition.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "coalition.login_throttle.client_ip"
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# Second factor for staff (django-otp, TOTP): Finance, Privacy officer and superusers must set
# up an authenticator app (`coalition.selectors.second_factor`); others may. The admin never
# shows a device's secret (a superuser resets a device by deleting it), and the audit log
# records devices made, confirmed and deleted, never their key or counters.
OTP_TOTP_ISSUER = "Coalition back office"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    {
        "model": "otp_totp.TOTPDevice",
        "exclude_fields": [
            "key",
            "drift",
            "last_t",
            "last_used_at",
            "throttling_failure_timestamp",
            "throttling_failure_count",
        ],
    },
)

# Celery: JSON only, bounded tasks. The broker only wakes workers; work that must happen is a
# database row first, so losing a message never loses work.
_broker_dir = BASE_DIR / "var" / "broker"
# A broker that is down or silent must not hold a request or a job: connecting and each command
# give up after seconds (redis-py waits forever by default), and a publish is retried once. What
# must be done is a database row already; the resume jobs send its message again.
BROKER_REDIS_OPTIONS: dict[str, object] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,  # above the worker's 1 s BRPOP wait
    "retry_on_timeout": False,
    # Redis hands an unacknowledged message to another worker after this long: longer than the
    # longest task may run (an import job's hard limit, 3 h 5 min), so a running job is never
    # started twice; a worker that died is covered sooner by beat's resume and catch-up jobs.
    "visibility_timeout": 4 * 60 * 60,
}


def redis_broker_options(url: str) -> dict[str, object]:
    """The transport options a broker URL gets: the bounded waits above for Redis, else none."""
    return dict(BROKER_REDIS_OPTIONS) if url.startswith(("redis://", "rediss://")) else {}


CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost//")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else redis_broker_options(CELERY_BROKER_URL)
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_SOFT_TIME_LIMIT = int(timedelta(minutes=10).total_seconds())
CELERY_TASK_TIME_LIMIT = int(timedelta(minutes=12).total_seconds())
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "coalition.api.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Coalition loyalty — till API",
    "DESCRIPTION": (
        "The REST contract for points of sale: enrol, earn, burn, reverse, look up a balance and "
        "upload batch files. Every POST needs an `Idempotency-Key`; every error is RFC 9457 "
        "`application/problem+json`. Authenticate with `Authorization: Api-Key <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "BatchStatusEnum": "coalition.models.BatchStatus",
        "BatchLineStatusEnum": "coalition.models.LineStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "coalition.api.schema.postprocess",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The till API (`till-api.md`).
# Problem `type` URIs are this base plus the problem's name (a relative reference by default).
PROBLEM_TYPE_BASE = env("PROBLEM_TYPE_BASE", default="/api/v1/problems/")
# How long a till request waits for a member's lock before a clean 503 `try-again`.
API_LOCK_TIMEOUT_MS = env.int("API_LOCK_TIMEOUT_MS", default=5000)
# Requests per minute per till key (0 turns the limit off). Counted in the default cache.
TILL_RATE_LIMIT = env.int("TILL_RATE_LIMIT", default=6000)
# Stored idempotent responses are kept this many days (the contract promises at least 7).
IDEMPOTENCY_RETENTION_DAYS = env.int("IDEMPOTENCY_RETENTION_DAYS", default=30)
# Batch files are up to 10 MB; a body a little over that still gets a clear problem.
DATA_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024
# Expiry notices (`coalition/channels.py`): the channels tried in order, the first the member
# has an address for is used; a member with none gets a "no channel" record. Email goes through
# Django's email backend (`EMAIL_URL`: the console by default, smtp://... in production).
EXPIRY_NOTICE_CHANNELS = env.list("EXPIRY_NOTICE_CHANNELS", default=["email", "sms"])
NOTICE_ADAPTERS: dict[str, str] = {}  # channel name -> dotted path of a class, to plug one in
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="loyalty@localhost")
# Shared by every web process (rate limits): Redis in production, local memory by default.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
