#!/usr/bin/perl
# A FastCGI app with Debian's libfcgi-perl; FCGI::Request() accepts on fd 0.
use strict;
use warnings;
use FCGI;

my $count = 0;
my $r = FCGI::Request();
while ($r->Accept() >= 0) {
    $count++;
    print "Content-Type: text/plain\r\n\r\nhello from perl\n";
    print "request $count in pid $$\n";
}
