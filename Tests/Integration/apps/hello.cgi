#!/bin/sh
# A plain CGI script, run by fcgiwrap.
printf 'Content-Type: text/plain\r\n'
printf 'X-CGI: yes\r\n'
printf '\r\n'
echo "hello from cgi"
echo "method=${REQUEST_METHOD:-?}"
echo "query=${QUERY_STRING:-}"
