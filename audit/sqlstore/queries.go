package sqlstore

import "strings"

// queries is every fixed statement of the store in one dialect; the
// multi-row ones are built by insert, readHashesSQL and deleteOpenSQL. The
// golden files in testdata/ hold all of them per dialect.
type queries struct {
	insertOrigin     string
	insertCheckpoint string
	insertKey        string
	upsertHead       string
	head             string
	maxHash          string
	latestCheckpoint string
	allKeys          string
	originKeys       string
	record           string
	checkpointAt     string
	unpaired         string
	inputs           string
	inputsAfter      string
	indexAt          string
	pruneInputsIdx   string
	pruneRecords     string
	setFirst         string
	pruneInputsTime  string
	origins          string
	checkpoints      string
	first            string
	held             string
	records          string
}

func newQueries(d *dialect) *queries {
	b := d.bind
	return &queries{
		insertOrigin:     b("INSERT INTO " + tOrigins + " (origin, first_index) VALUES (?, 0)"),
		insertCheckpoint: b("INSERT INTO " + tCheckpoints + " (origin, tree_size, created, note) VALUES (?, ?, ?, ?)"),
		insertKey:        b("INSERT INTO " + tKeys + " (origin, key_id, vkey, added) VALUES (?, ?, ?, ?)"),
		upsertHead:       upsertHeadSQL(d),
		head:             b("SELECT tree_size, root, mac FROM " + tHeads + " WHERE origin = ?"),
		maxHash:          b("SELECT MAX(id) FROM " + tHashes + " WHERE origin = ?"),
		latestCheckpoint: b(d.first1("note", "FROM "+tCheckpoints+" WHERE origin = ? ORDER BY tree_size DESC")),
		allKeys:          "SELECT origin, vkey, added FROM " + tKeys + " ORDER BY origin, added, key_id",
		originKeys:       b("SELECT origin, vkey, added FROM " + tKeys + " WHERE origin = ? ORDER BY origin, added, key_id"),
		record:           b("SELECT data FROM " + tRecords + " WHERE origin = ? AND idx = ?"),
		checkpointAt:     b(d.first1("note", "FROM "+tCheckpoints+" WHERE origin = ? AND tree_size >= ? ORDER BY tree_size")),
		unpaired:         b("SELECT r.data FROM " + tOpenIntents + " o JOIN " + tRecords + " r ON r.origin = o.origin AND r.idx = o.idx WHERE o.origin = ? ORDER BY o.idx"),
		inputs:           b("SELECT r.data, i.input FROM " + tInputs + " i JOIN " + tRecords + " r ON r.origin = i.origin AND r.idx = i.idx WHERE i.origin = ? AND i.rec_time >= ? ORDER BY i.idx"),
		inputsAfter:      b(inputsAfterSQL(d)),
		indexAt:          b("SELECT MIN(idx) FROM " + tRecords + " WHERE origin = ? AND rec_time >= ?"),
		pruneInputsIdx:   b("DELETE FROM " + tInputs + " WHERE origin = ? AND idx < ?"),
		pruneRecords:     b("DELETE FROM " + tRecords + " WHERE origin = ? AND idx < ?"),
		setFirst:         b("UPDATE " + tOrigins + " SET first_index = ? WHERE origin = ? AND first_index < ?"),
		pruneInputsTime:  b("DELETE FROM " + tInputs + " WHERE origin = ? AND rec_time < ?"),
		// Every table that names an origin, not only tOrigins: deleting one
		// row there must not hide a whole log from the verifier.
		origins: "SELECT origin FROM " + tOrigins + " UNION SELECT origin FROM " + tHashes + " UNION SELECT origin FROM " + tRecords +
			" UNION SELECT origin FROM " + tCheckpoints + " UNION SELECT origin FROM " + tKeys + " ORDER BY origin",
		checkpoints: b(checkpointsSQL(d)),
		first:       b("SELECT first_index FROM " + tOrigins + " WHERE origin = ?"),
		held: b("SELECT CASE WHEN EXISTS (SELECT 1 FROM " + tRecords + " WHERE origin = ?) OR EXISTS (SELECT 1 FROM " + tCheckpoints +
			" WHERE origin = ?) OR EXISTS (SELECT 1 FROM " + tKeys + " WHERE origin = ?) THEN 1 ELSE 0 END"),
		records: b("SELECT idx, data, leaf FROM " + tRecords + " WHERE origin = ? AND idx >= ? AND idx < ? ORDER BY idx"),
	}
}

// upsertHeadSQL replaces an origin's authenticated head; its parameters
// are origin, tree_size, root and mac. One log writes one origin (the
// claim), so SQL Server's update-then-insert does not race.
func upsertHeadSQL(d *dialect) string {
	if d.name == SQLServer {
		return "UPDATE " + tHeads + " SET tree_size = @p2, root = @p3, mac = @p4 WHERE origin = @p1; " +
			"IF @@ROWCOUNT = 0 INSERT INTO " + tHeads + " (origin, tree_size, root, mac) VALUES (@p1, @p2, @p3, @p4)"
	}
	return d.bind("INSERT INTO " + tHeads + " (origin, tree_size, root, mac) VALUES (?, ?, ?, ?) " +
		"ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, root = excluded.root, mac = excluded.mac")
}

func inList(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// readHashesSQL reads n hashes of one origin (before bind).
func readHashesSQL(n int) string {
	return "SELECT id, hash FROM " + tHashes + " WHERE origin = ? AND id IN (" + inList(n) + ")"
}

// deleteOpenSQL removes n paired intents (before bind).
func deleteOpenSQL(n int) string {
	return "DELETE FROM " + tOpenIntents + " WHERE origin = ? AND idx IN (" + inList(n) + ")"
}

// checkpointsSQL reads at most a page of checkpoints of an origin after a
// tree size (the page size is its last parameter): [Store.Checkpoints]
// holds no result set open while its caller handles a page, since the
// verifier reads records in between.
func checkpointsSQL(d *dialect) string {
	q := "SELECT tree_size, note FROM " + tCheckpoints + " WHERE origin = ? AND tree_size > ? ORDER BY tree_size"
	if d.name == SQLServer {
		return q + " OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
	}
	return q + " LIMIT ?"
}

// inputsAfterSQL reads at most a page of inputs after an index (the page
// size is its last parameter): bounded in the query, since closing a result
// set early makes PostgreSQL's driver read the rest of it.
func inputsAfterSQL(d *dialect) string {
	q := "SELECT r.data, i.input FROM " + tInputs + " i JOIN " + tRecords + " r ON r.origin = i.origin AND r.idx = i.idx WHERE i.origin = ? AND i.rec_time >= ? AND i.idx > ? ORDER BY i.idx"
	if d.name == SQLServer {
		return q + " OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
	}
	return q + " LIMIT ?"
}
