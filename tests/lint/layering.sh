#!/usr/bin/env bash
# Keeps the architecture honest: dependencies point one way (domain <- service <- adapters
# <- entrypoints/bootstrap), so the domain and service layers include no infrastructure
# library, the domain does no logging, adapters never reach up into the composition root or
# the entrypoints, and every source file opens with a comment saying what it is.
# Usage: layering.sh [ROOT]   (default: this checkout; layering_selftest.sh passes a copy)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
cd "$root"
status=0

complain() {
    echo "lint: $*" >&2
    status=1
}

infra='#include *[<"](libpq-fe\.h|librdkafka/|avro|jansson\.h|curl/|microhttpd\.h)'
while IFS= read -r hit; do
    complain "infrastructure include in the core: $hit"
done < <(grep -rEn "$infra" processor/domain processor/service include/ap/{error,messages,model,ports,bus,array,strbuf,backoff,topics,header}.h || true)

while IFS= read -r hit; do
    complain "the domain must not log or reach the service layer: $hit"
done < <(grep -rEn '#include *"ap/(log|ports|bus|bootstrap)\.h"' processor/domain include/ap/{error,messages,model}.h || true)

while IFS= read -r hit; do
    complain "the core must not depend on adapters or entrypoints: $hit"
done < <(grep -rEn '#include *"(adapters|entrypoints)/|#include *"ap/(pg|kafka_consumer|kafka_producer|codec|config|relay)\.h"' processor/domain processor/service || true)

# Adapters sit below the composition root and the entrypoints: they must not include
# either (bootstrap.h, bootstrap.c, the relay loop's relay.h, anything under entrypoints/).
while IFS= read -r hit; do
    complain "an adapter must not depend on the composition root or the entrypoints: $hit"
done < <(grep -rEn '#include *"(ap/bootstrap\.h|ap/relay\.h|bootstrap\.[ch]|entrypoints/[^"]*)"' processor/adapters || true)

for file in $(git ls-files 'processor/*.c' 'processor/*.h' 'include/*.h' 'tests/*.c' 'tests/*.h' 2>/dev/null || find processor include tests -name '*.[ch]'); do
    head -n 1 "$file" | grep -q '^/\*' || complain "$file does not open with a comment saying what it is"
done

if [[ $status -eq 0 ]]; then
    echo "1 passed, 0 failed"
fi
exit $status
