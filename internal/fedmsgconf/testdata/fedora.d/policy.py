# Routing policy built per topic from each host's certificates, the way
# Fedora's policy template generated it.
env = "prod"
prefix = "org.fedoraproject." + env
suffix = "iad2.example.org"
shell_hosts = ["busgateway01", "pkgs01", "batcave01"]


def shell_certs():
    return ["shell-%s.%s" % (host, suffix) for host in shell_hosts]


routing_policy = {
    # Only the package git server's scm cert may announce pushes.
    prefix + ".git.receive": ["scm-pkgs01.%s" % suffix],
    prefix + ".logger.log": shell_certs(),
}
for topic in ("bodhi.update.request.testing", "bodhi.update.comment"):
    routing_policy["%s.%s" % (prefix, topic)] = [
        "bodhi-bodhi-backend01.%s" % suffix,
    ]

config = dict(
    routing_nitpicky=False,
    routing_policy=routing_policy,
)
