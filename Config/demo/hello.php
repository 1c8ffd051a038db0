<?php
// Drover demo app: prints who answered.
header('Content-Type: text/plain');
printf("Hello from PHP %s via %s, pid %d, pool %s\n", PHP_VERSION, PHP_SAPI, getmypid(), getenv('DROVER_POOL') ?: '?');
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    printf("You posted %d bytes.\n", strlen(file_get_contents('php://input')));
}
