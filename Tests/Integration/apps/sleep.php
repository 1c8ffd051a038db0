<?php
// Sleeps ?s= seconds (default 2), then answers with a recognisable body.
header('Content-Type: text/plain');
$s = isset($_GET['s']) ? (float)$_GET['s'] : 2.0;
usleep((int)($s * 1000000));
echo "slept ", $s, "\n";
echo str_repeat("0123456789abcdef", 4096), "\n";
echo "done\n";
