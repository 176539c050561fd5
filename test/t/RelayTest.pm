
# Copyright (c) 2026, orderexp developers

# Helpers of the orderexp-relay TAP tests (008_relay.pl, 030_relay_nodes.pl):
# starting processes (the relay, the test servers) with their output in
# files, waiting for them with a time-out, polling a condition.  Every
# process started here is killed when the test ends, whatever happens.
#
# This file is not a test: PROVE_TESTS names test/t/*.pl only.

package RelayTest;

use strict;
use warnings;

use Exporter 'import';
use POSIX qw(WNOHANG);
use Time::HiRes qw(usleep time);

our @EXPORT = qw(spawn finish wait_until);

my @children;

END
{
	kill 'KILL', grep { $_ && kill 0, $_ } @children;
}

# spawn($out, $err, @cmd): start @cmd with stdin from /dev/null, stdout and
# stderr appended to the files $out and $err; returns its pid
sub spawn
{
	my ($out, $err, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDIN,  '<',  '/dev/null';
		open STDOUT, '>>', $out;
		open STDERR, '>>', $err;
		exec @cmd or POSIX::_exit(127);
	}
	push @children, $pid;
	return $pid;
}

# finish($pid, $timeout): wait for $pid; its exit status, minus the signal
# number if a signal ended it, or undef if it did not end within $timeout s
sub finish
{
	my ($pid, $timeout) = @_;
	my $start = time();
	while (time() - $start < $timeout)
	{
		my $w = waitpid($pid, WNOHANG);
		if ($w == $pid)
		{
			@children = grep { $_ != $pid } @children;
			return $? & 127 ? -($? & 127) : $? >> 8;
		}
		usleep(20_000);
	}
	return undef;
}

# wait_until($code, $timeout): poll $code every 50 ms until it returns true
# (1) or $timeout seconds pass (0)
sub wait_until
{
	my ($code, $timeout) = @_;
	my $start = time();
	while (time() - $start < $timeout)
	{
		return 1 if $code->();
		usleep(50_000);
	}
	return 0;
}

1;
