/*
 * orderexp--1.0--1.1.sql is assembled by the Makefile from the files of
 * sql/upgrade-1.1/, in the order of their names; each file holds one
 * feature's part of the 1.1 interface.  A fresh CREATE EXTENSION runs
 * orderexp--1.0.sql and then this script, so the upgrade path is the only
 * path and every test exercises it.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION orderexp UPDATE TO '1.1'" to load this file. \quit
