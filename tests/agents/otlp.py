"""OpenTelemetry through the proxy, with the real Python SDK and its OTLP exporters.

    otlp.py sdk-grpc        a span, a metric and a log record, each exported by the SDK's
                            OTLP/gRPC exporter; prints {"traces": "SUCCESS", ...}
    otlp.py sdk-http        the same with the OTLP/HTTP (protobuf) exporters
    otlp.py call METHOD     one raw gRPC call (an empty request) on the SDK's grpcio;
                            prints {"code": "...", "details": "...", "trailers": {...}}
    otlp.py stream METHOD N a client-streaming call of N messages, 200 ms apart; prints
                            {"code": "...", "details": "..."}
    otlp.py concurrent N    one trace export, then N at once on the same channel; prints {"codes": {...}}

Environment: OTLP_ADDRESS (host:port of the proxy), CA_FILE, AUTH (the `authorization`
value; empty for none), EXTRA_METADATA (optional JSON object of more metadata), PLAINTEXT
(set: raw calls over cleartext h2c instead of TLS).
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

    resource = Resource.create({"service.name": "otlp-checkout"})
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
        timeout=10,
    )
    return {
        "traces": OTLPSpanExporter(**options).export(spans).name,
        "metrics": OTLPMetricExporter(**options).export(metrics).name,
        "logs": OTLPLogExporter(**options).export(logs).name,
    }


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
            timeout=10,
        )

    return {
        "traces": OTLPSpanExporter(**options("traces")).export(spans).name,
        "metrics": OTLPMetricExporter(**options("metrics")).export(metrics).name,
        "logs": OTLPLogExporter(**options("logs")).export(logs).name,
    }


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
