"""Send one transaction, one span and one error through apm-auth-proxy with the official
Elastic APM Python agent. Configured by environment: APM_URL, APM_CA_FILE and either
APM_SECRET_TOKEN or APM_API_KEY."""
import os
import sys

import elasticapm

config = {
    "SERVICE_NAME": "python-agent-test",
    "SERVER_URL": os.environ["APM_URL"],
    "SERVER_CA_CERT_FILE": os.environ["APM_CA_FILE"],
    "VERIFY_SERVER_CERT": True,
    "CENTRAL_CONFIG": False,
    "METRICS_INTERVAL": "0ms",
    "CLOUD_PROVIDER": "none",
    "API_REQUEST_TIME": "1s",
}
if "APM_SECRET_TOKEN" in os.environ:
    config["SECRET_TOKEN"] = os.environ["APM_SECRET_TOKEN"]
else:
    config["API_KEY"] = os.environ["APM_API_KEY"]

client = elasticapm.Client(config)
client.begin_transaction("request")
with elasticapm.capture_span("SELECT * FROM users", span_type="db"):
    pass
try:
    1 / 0
except ZeroDivisionError:
    client.capture_exception()
client.end_transaction("GET /users", "success")
client.close()
print("sent", file=sys.stderr)
