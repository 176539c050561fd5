
# Copyright (c) 2026, orderexp developers

# META.json, the distribution's metadata for PGXN, checked against the PGXN
# Meta Spec 1.0.0 (https://pgxn.org/spec/): the required keys and no
# unknown ones, the form of name, version (Semantic Versioning 1.0.0),
# license, maintainer, provides, prereqs (phases, relations, version
# ranges), release_status, resources and tags; and kept in step with the
# tree: the version of orderexp it provides is orderexp.control's
# default_version, its file the install script of that version, and the
# files it names exist.  No server is needed.

use strict;
use warnings;

use FindBin;
use JSON::PP;
use Test::More;

my $root = "$FindBin::RealBin/../..";

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', $path or die "$path: $!";
	local $/;
	return <$fh>;
}

my $meta = eval { JSON::PP->new->decode(slurp("$root/META.json")) };
ok(ref $meta eq 'HASH', 'META.json is a JSON object') or BAIL_OUT("META.json: $@");

my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[A-Za-z][0-9A-Za-z-]*)?$/;
my %licenses = map { $_ => 1 }
  qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd gfdl_1_2 gfdl_1_3
  gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5
  postgresql qpl_1_0 ssleay sun zlib open_source restricted unrestricted unknown);
my %required = map { $_ => 1 }
  qw(abstract license maintainer meta-spec name provides version);
my %optional = map { $_ => 1 }
  qw(description generated_by no_index prereqs release_status resources tags);
my $uri = qr{^[a-z][a-z0-9+.-]*://\S+$};

sub is_string { my ($v) = @_; return defined $v && !ref $v && length $v > 0; }

# a prerequisite's version: 0, a version, or a range of comparisons
sub is_version_range
{
	my ($v) = @_;
	return 0 unless defined $v && !ref $v;
	return 1 if $v eq '0';
	for my $part (split /\s*,\s*/, $v)
	{
		return 0 unless $part =~ /^(?:(?:[<>]=?|==|!=)\s*)?(\S+)$/ && $1 =~ $semver;
	}
	return 1;
}

# keys
for my $k (sort keys %required)
{
	ok(exists $meta->{$k}, "required key $k");
}
is_deeply([ grep { !$required{$_} && !$optional{$_} && !/^[xX]_/ } sort keys %$meta ],
	[], 'no key the spec does not know (custom ones start with x_)');

# name, abstract, version, maintainer, license, meta-spec
ok(is_string($meta->{name}) && length $meta->{name} >= 2
	  && $meta->{name} !~ m{[/\\\s[:cntrl:]]}, 'name is a valid distribution name');
is($meta->{name}, 'orderexp', 'name is orderexp');
ok(is_string($meta->{abstract}), 'abstract is a non-empty string');
like($meta->{version} // '', $semver, 'version is a semantic version');
my @maint = ref $meta->{maintainer} eq 'ARRAY' ? @{ $meta->{maintainer} } : ($meta->{maintainer});
ok(@maint && !grep({ !is_string($_) } @maint), 'maintainer is a string or a list of strings');
ok((!ref $meta->{license} && $licenses{ $meta->{license} // '' })
	  || (ref $meta->{license} eq 'HASH' && %{ $meta->{license} }
		&& !grep({ !is_string($_) || $_ !~ $uri } values %{ $meta->{license} })),
	'license is one of the spec\'s names, or names with URIs');
is(ref $meta->{'meta-spec'}, 'HASH', 'meta-spec is an object');
is($meta->{'meta-spec'}{version}, '1.0.0', 'meta-spec version 1.0.0');
ok(!defined $meta->{'meta-spec'}{url} || $meta->{'meta-spec'}{url} =~ $uri, 'meta-spec url is a URI');

# provides
is(ref $meta->{provides}, 'HASH', 'provides is an object');
for my $ext (sort keys %{ $meta->{provides} || {} })
{
	my $p = $meta->{provides}{$ext};
	ok(is_string($p->{file}) && -f "$root/$p->{file}", "provides $ext: file $p->{file} exists");
	like($p->{version} // '', $semver, "provides $ext: version is a semantic version");
	ok(!defined $p->{docfile} || -f "$root/$p->{docfile}", "provides $ext: docfile exists");
	is_deeply([ grep { !/^(file|version|abstract|docfile|[xX]_.*)$/ } sort keys %$p ],
		[], "provides $ext: no unknown key");
}

# prereqs
my $prereqs = $meta->{prereqs} // {};
is(ref $prereqs, 'HASH', 'prereqs is an object');
for my $phase (sort keys %$prereqs)
{
	like($phase, qr/^(configure|build|test|runtime|develop|[xX]_.*)$/, "prereqs phase $phase");
	for my $rel (sort keys %{ $prereqs->{$phase} })
	{
		like($rel, qr/^(requires|recommends|suggests|conflicts|[xX]_.*)$/,
			"prereqs $phase relation $rel");
		for my $dep (sort keys %{ $prereqs->{$phase}{$rel} })
		{
			ok(is_version_range($prereqs->{$phase}{$rel}{$dep}),
				"prereqs $phase $rel $dep: a version or a range");
		}
	}
}
like($prereqs->{runtime}{requires}{PostgreSQL} // '', qr/15\.0\.0/,
	'the runtime requires PostgreSQL 15, the version tested');

# release_status, resources, tags
like($meta->{release_status} // 'stable', qr/^(stable|testing|unstable)$/, 'release_status');
my $res = $meta->{resources} // {};
is_deeply([ grep { !/^(homepage|bugtracker|repository|[xX]_.*)$/ } sort keys %$res ],
	[], 'resources: no unknown key');
ok(!defined $res->{homepage} || $res->{homepage} =~ $uri, 'resources homepage is a URI');
for my $k (qw(web url))
{
	for my $r (grep { defined } $res->{bugtracker}, $res->{repository})
	{
		ok(!defined $r->{$k} || $r->{$k} =~ $uri, "resources $k is a URI");
	}
}
ok(ref $meta->{tags} eq 'ARRAY' && !grep({ !is_string($_) || length $_ > 255 } @{ $meta->{tags} }),
	'tags is a list of short strings');

# in step with the tree
my ($default_version) = slurp("$root/orderexp.control") =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $default_version, "orderexp.control has a default_version");
my $p = $meta->{provides}{orderexp} // {};
is($p->{version}, "$default_version.0",
	'provides orderexp version is default_version of orderexp.control');
is($p->{file}, "sql/orderexp--$default_version.sql", 'provides orderexp file is its install script');
is($meta->{version}, $p->{version}, 'the distribution\'s version is the extension\'s');

done_testing();
