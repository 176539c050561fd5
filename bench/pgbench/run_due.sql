SELECT * FROM orderexp.run_due();
