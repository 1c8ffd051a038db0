#!/bin/sh
# Drover demo CGI script (served through fcgiwrap).
printf 'Content-Type: text/plain\r\n\r\n'
echo "Hello from a CGI script, pid $$, method ${REQUEST_METHOD:-?}"
