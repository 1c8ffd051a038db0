<?php
// Kills the app (php-cgi) that runs it with SIGSEGV, as a crashing
// extension would: for emergency_restart_threshold.
header('Content-Type: text/plain');
echo "crashing\n";
flush();
posix_kill(posix_getpid(), 11);
sleep(5);
