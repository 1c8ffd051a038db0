<?php
// GET and POST: echoes the method, a query parameter and the posted form.
header('Content-Type: text/plain');
header('X-Drover-Test: hello');
echo "method=", $_SERVER['REQUEST_METHOD'], "\n";
echo "name=", $_GET['name'] ?? '-', "\n";
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    echo "posted=", $_POST['field'] ?? '-', "\n";
    echo "length=", $_SERVER['CONTENT_LENGTH'] ?? '0', "\n";
}
echo "sapi=", PHP_SAPI, "\n";
