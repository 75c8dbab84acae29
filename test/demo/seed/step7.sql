USE rexraydb;
SELECT * FROM pets;
