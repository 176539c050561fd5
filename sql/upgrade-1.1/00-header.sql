/*
 * orderexp--1.0--1.1.sql is assembled by the Makefile from the files of
 * sql/upgrade-1.1/, in the order of their names; each file holds one
 * feature's part of the 1.1 interface.  Each function is defined once in
 * the assembled script, in its 1.1 form: a fragment does not replace what
 * an earlier fragment made.
 *
 * A fresh CREATE EXTENSION runs orderexp--1.3.sql alone.  This script brings
 * a database made with 1.0 to 1.1 (and CREATE EXTENSION orderexp VERSION
 * '1.1' runs orderexp--1.0.sql and then this script); TAP test 010 checks
 * that 1.0 updated to the default version has the catalog of a fresh
 * install, and 013 updates 1.1 to 1.2 with data.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION orderexp UPDATE TO '1.1'" to load this file. \quit
