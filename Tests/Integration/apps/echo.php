<?php
// Streams the request body back unchanged, never holding it whole.
header('Content-Type: application/octet-stream');
$in = fopen('php://input', 'rb');
$out = fopen('php://output', 'wb');
stream_copy_to_stream($in, $out);
fclose($in);
