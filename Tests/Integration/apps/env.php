<?php
// What the pool's env[], clear_env and php_value[] gave this app.
header('Content-Type: text/plain');
$foo = getenv('FOO');
$path = getenv('PATH');
$marker = getenv('DROVER_TEST_OUTER');
echo "FOO=", $foo === false ? '(unset)' : $foo, "\n";
echo "POOL=", getenv('POOL_NAME') === false ? '(unset)' : getenv('POOL_NAME'), "\n";
echo "OUTER=", $marker === false ? '(unset)' : $marker, "\n";
echo "memory_limit=", ini_get('memory_limit'), "\n";
echo "precision=", ini_get('precision'), "\n";
echo "post_max_size=", ini_get('post_max_size'), "\n";
