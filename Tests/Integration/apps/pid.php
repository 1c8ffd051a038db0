<?php
// Answers with the pid of the app (php-cgi) that ran it: tests use it to see
// when a worker's app was replaced.
header('Content-Type: text/plain');
echo "pid=", getmypid(), "\n";
