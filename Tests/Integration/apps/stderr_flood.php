<?php
// Writes to the app's stderr (fd 2; php-cgi has no STDERR constant), then
// answers. ?mb=M writes M MiB of numbered lines, each ?len=L bytes long
// (default 100) without its newline: "flood NNNNNNN xxx…". ?lines=N writes
// N lines instead of M MiB. ?long=K adds K bytes as one more line (wrapped
// by the agent). Answers with the number of lines written.
header('Content-Type: text/plain');
$len = max(16, (int)($_GET['len'] ?? 100));
$lines = isset($_GET['lines']) ? (int)$_GET['lines']
    : intdiv((int)(((float)($_GET['mb'] ?? 10)) * 1048576), $len + 1);
$err = fopen('php://stderr', 'w');
$pad = str_repeat('x', $len);
$chunk = '';
for ($i = 0; $i < $lines; $i++) {
    $head = sprintf('flood %07d ', $i);
    $chunk .= $head . substr($pad, strlen($head)) . "\n";
    if (strlen($chunk) >= 65536) {
        fwrite($err, $chunk);
        $chunk = '';
    }
}
$long = (int)($_GET['long'] ?? 0);
if ($long > 0) {
    $chunk .= 'long ' . str_repeat('y', $long - 5) . "\n";
}
fwrite($err, $chunk);
fclose($err);
echo "lines=", $lines + ($long > 0 ? 1 : 0), "\n";
