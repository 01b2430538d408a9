#!/bin/sh
# A stand-in for ssh in tests: "rsh HOST -l USER COMMAND..." runs COMMAND here.
echo "$@" >> "${RSH_LOG:-/dev/null}"
shift
if [ "$1" = "-l" ]; then shift 2; fi
exec "$@"
