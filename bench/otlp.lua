-- wrk script: OTLP/HTTP protobuf trace exports (the file $BENCH_BODY) to /v1/traces with the
-- credential in $BENCH_AUTH.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
