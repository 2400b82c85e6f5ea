-- wrk script: 1 KiB ndjson POSTs to the intake endpoint with the token from $BENCH_AUTH.
-- BENCH_CLOSE=1 adds `Connection: close` (a new TLS connection, so a full handshake, per request).
local line = '{"transaction":{"id":"0123456789abcdef","trace_id":"0123456789abcdef0123456789abcdef","name":"GET /api/users","type":"request","duration":12.5,"result":"HTTP 2xx","sampled":true,"span_count":{"started":3}}}\n'
local body = '{"metadata":{"service":{"name":"bench","agent":{"name":"go","version":"2.6.0"}}}}\n'
while #body + #line <= 1024 do body = body .. line end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
if os.getenv("BENCH_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
