-- The round trip by which a held lease checks that its session still
-- answers.
SELECT 1
