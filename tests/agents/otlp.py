"""OpenTelemetry through the proxy, with the real Python SDK and its OTLP exporters.

    otlp.py sdk-grpc        a span, a metric and a log record, each exported by the SDK's
                            OTLP/gRPC exporter; prints {"traces": "SUCCESS", ...}
    otlp.py sdk-http        the same with the OTLP/HTTP (protobuf) exporters
    otlp.py http-json       the same telemetry, encoded by the SDK and sent as OTLP/HTTP JSON;
                            prints {"traces": <status>, ...}
    otlp.py mixed           one trace export holding two resources (SERVICE_NAME and
                            OTHER_SERVICE), as a gRPC call; prints {"code": …, "details": …}
    otlp.py call METHOD     one raw gRPC call (an empty request) on the SDK's grpcio;
                            prints {"code": "...", "details": "...", "trailers": {...}}
    otlp.py stream METHOD N a client-streaming call of N messages, 200 ms apart; prints
                            {"code": "...", "details": "..."}
    otlp.py concurrent N    one trace export, then N at once on the same channel; prints {"codes": {...}}

Environment: OTLP_ADDRESS (host:port of the proxy), CA_FILE, AUTH (the `authorization`
value; empty for none), EXTRA_METADATA (optional JSON object of more metadata), PLAINTEXT
(set: raw calls over cleartext h2c instead of TLS), SERVICE_NAME (the resource's
service.name, default otlp-checkout), EXPORT_TIMEOUT (the exporters' timeout in seconds,
default 10; the time they may spend retrying), SIGNALS (what sdk-* export, default
traces,metrics,logs).
"""

import base64
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

ADDRESS = os.environ["OTLP_ADDRESS"]
CA = open(os.environ["CA_FILE"], "rb").read()
AUTH = os.environ.get("AUTH", "")
EXTRA = json.loads(os.environ.get("EXTRA_METADATA", "{}"))
SERVICE = os.environ.get("SERVICE_NAME", "otlp-checkout")
TIMEOUT = float(os.environ.get("EXPORT_TIMEOUT", "10"))
SIGNALS = os.environ.get("SIGNALS", "traces,metrics,logs").split(",")


def metadata():
    pairs = [("authorization", AUTH)] if AUTH else []
    return pairs + sorted(EXTRA.items())


def telemetry():
    """A finished span, a metrics batch and a log record, made by the SDK itself."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    resource = Resource.create({"service.name": SERVICE})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    with tracer_provider.get_tracer("otlp.py").start_as_current_span("otlp-span-checkout"):
        pass
    reader = InMemoryMetricReader()
    meter = MeterProvider(resource=resource, metric_readers=[reader]).get_meter("otlp.py")
    meter.create_counter("otlp_metric_orders").add(3)
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger_provider.get_logger("otlp.py").emit(body="otlp-log-checkout")
    return spans.get_finished_spans(), reader.get_metrics_data(), logs.get_finished_logs()


def sdk_grpc():
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    spans, metrics, logs = telemetry()
    options = dict(
        endpoint=f"https://{ADDRESS}",
        credentials=grpc.ssl_channel_credentials(root_certificates=CA),
        headers=metadata(),
        timeout=TIMEOUT,
    )
    exports = {
        "traces": lambda: OTLPSpanExporter(**options).export(spans).name,
        "metrics": lambda: OTLPMetricExporter(**options).export(metrics).name,
        "logs": lambda: OTLPLogExporter(**options).export(logs).name,
    }
    return {signal: exports[signal]() for signal in SIGNALS}


def sdk_http():
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    spans, metrics, logs = telemetry()
    ca_file = os.environ["CA_FILE"]
    headers = dict(metadata())

    def options(signal):
        return dict(
            endpoint=f"https://{ADDRESS}/v1/{signal}",
            certificate_file=ca_file,
            headers=headers,
            timeout=TIMEOUT,
        )

    exports = {
        "traces": lambda: OTLPSpanExporter(**options("traces")).export(spans).name,
        "metrics": lambda: OTLPMetricExporter(**options("metrics")).export(metrics).name,
        "logs": lambda: OTLPLogExporter(**options("logs")).export(logs).name,
    }
    return {signal: exports[signal]() for signal in SIGNALS}


def http_json():
    """The SDK's own encoding of the telemetry, as OTLP/HTTP JSON (protobuf's JSON mapping)."""
    import requests
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    spans, metrics, logs = telemetry()
    headers = dict(metadata())
    headers["content-type"] = "application/json"
    out = {}
    for signal, message in (
        ("traces", encode_spans(spans)),
        ("metrics", encode_metrics(metrics)),
        ("logs", encode_logs(logs)),
    ):
        answer = requests.post(
            f"https://{ADDRESS}/v1/{signal}",
            data=MessageToJson(message),
            headers=headers,
            verify=os.environ["CA_FILE"],
            timeout=TIMEOUT,
        )
        out[signal] = answer.status_code
    return out


def mixed():
    """One trace export with two resources: SERVICE_NAME's and OTHER_SERVICE's."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def group(service):
        name = KeyValue(key="service.name", value=AnyValue(string_value=service))
        span = Span(name=f"span-of-{service}", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
        return ResourceSpans(
            resource=Resource(attributes=[name]), scope_spans=[ScopeSpans(spans=[span])]
        )

    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[group(SERVICE), group(os.environ["OTHER_SERVICE"])]
    )
    stub = channel().unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    try:
        stub(request.SerializeToString(), metadata=metadata(), timeout=20)
        return {"code": "OK", "details": ""}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


def channel():
    if os.environ.get("PLAINTEXT"):
        return grpc.insecure_channel(ADDRESS)
    # The name the test certificate is issued for.
    return grpc.secure_channel(
        ADDRESS.replace("127.0.0.1", "localhost"),
        grpc.ssl_channel_credentials(root_certificates=CA),
    )


def trailers(pairs):
    """Trailing metadata as JSON: binary (`-bin`) values in base64."""
    out = {}
    for key, value in pairs or ():
        out[key] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return out


def call(method):
    stub = channel().unary_unary(method)
    request = trace_service_pb2.ExportTraceServiceRequest().SerializeToString()
    try:
        _, outcome = stub.with_call(request, metadata=metadata(), timeout=20)
        return {"code": "OK", "details": "", "trailers": trailers(outcome.trailing_metadata())}
    except grpc.RpcError as e:
        return {
            "code": e.code().name,
            "details": e.details(),
            "trailers": trailers(e.trailing_metadata()),
        }


def stream(method, n):
    import time

    def messages():
        for i in range(n):
            if i:
                time.sleep(0.2)
            yield f"message {i}".encode()

    stub = channel().stream_unary(method)
    try:
        stub(messages(), metadata=metadata(), timeout=30)
        return {"code": "OK", "details": ""}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}


def concurrent(n):
    stub = channel().unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    )
    request = trace_service_pb2.ExportTraceServiceRequest().SerializeToString()

    def one(_):
        try:
            stub(request, metadata=metadata(), timeout=30)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    # A long-lived exporter: its channel is open and has made a call before the burst.
    stub(request, metadata=metadata(), timeout=30)
    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        codes = [f.result() for f in futures]
    return {"codes": {c: codes.count(c) for c in set(codes)}}


def main():
    mode = sys.argv[1]
    if mode == "sdk-grpc":
        result = sdk_grpc()
    elif mode == "sdk-http":
        result = sdk_http()
    elif mode == "http-json":
        result = http_json()
    elif mode == "mixed":
        result = mixed()
    elif mode == "call":
        result = call(sys.argv[2])
    elif mode == "stream":
        result = stream(sys.argv[2], int(sys.argv[3]))
    elif mode == "concurrent":
        result = concurrent(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
