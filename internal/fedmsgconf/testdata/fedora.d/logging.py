# Shaped like roles/fedmsg/base/templates/logging.py.j2: imports, a filter
# class and functions, then the logging dict.
import logging
import socket

try:
    import psutil
except (OSError, ImportError):
    # We run into issues when trying to import psutil from inside mod_wsgi on
    # rhel7.  If we hit that here, then just fail quietly.
    psutil = None

hostname = socket.gethostname().split('.', 1)[0]


class ContextInjector(logging.Filter):
    """ Logging filter that adds context to log records. """

    def filter(self, record):
        record.host = hostname
        record.proc = get_process()
        return True


def get_process():
    if psutil is None:
        return None
    return psutil.Process()


def format_args(*args):
    return "\n".join(str(arg) for arg in args)


bare_format = "[%(asctime)s][%(name)10s %(levelname)7s] %(message)s"

config = dict(
    logging=dict(
        version=1,
        formatters=dict(
            bare={
                "datefmt": "%Y-%m-%d %H:%M:%S",
                "format": bare_format,
            },
            context={
                "format": "%(host)s: " + bare_format,
            },
        ),
        filters=dict(
            context={
                # A class object: not plain data.
                "()": ContextInjector,
            },
        ),
        handlers=dict(
            console={
                "class": "logging.StreamHandler",
                "formatter": "bare",
                "level": "INFO",
                "stream": "ext://sys.stdout",
            },
            mailer={
                "class": "logging.handlers.SMTPHandler",
                "formatter": "context",
                "filters": ["context"],
                "level": "ERROR",
                "mailhost": "bastion.iad2.example.org",
                "fromaddr": "fedmsg@example.org",
                "toaddrs": ["sysadmin-datanommer-members@example.org"],
                "subject": "fedmsg error log (%s)" % hostname,
            },
        ),
        loggers=dict(
            fedmsg={"level": "INFO", "propagate": False, "handlers": ["console"]},
            moksha={"level": "INFO", "propagate": False, "handlers": ["console"]},
        ),
    ),
)
