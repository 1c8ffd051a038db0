<?php
// Writes ?mb= MiB (default 100) of a deterministic pattern in 64 KiB chunks:
// chunk i is 64 KiB of the byte (i % 251), so the test can hash it itself.
header('Content-Type: application/octet-stream');
$mb = isset($_GET['mb']) ? (int)$_GET['mb'] : 100;
$chunks = $mb * 16;
header('Content-Length: ' . ($chunks * 65536));
while (ob_get_level() > 0) { ob_end_flush(); }
for ($i = 0; $i < $chunks; $i++) {
    echo str_repeat(chr($i % 251), 65536);
    flush();
}
