package evidence_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/xuri/excelize/v2"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// archive writes the evidence of the test log and returns its files and
// manifest.
func archive(t *testing.T, store audit.Source, vkey string) (map[string][]byte, evidence.Manifest) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, store, options(vkey)); err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, buf.Bytes())
	var m evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	return files, m
}

func openBook(t *testing.T, data []byte) *excelize.File {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("report.xlsx does not open: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// records parses a CSV file of the archive, header first.
func records(t *testing.T, data []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// sheet reads a worksheet, each row padded to width cells (excelize leaves
// out the empty cells at the end of a row).
func sheet(t *testing.T, f *excelize.File, name string, width int) [][]string {
	t.Helper()
	rows, err := f.GetRows(name, excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatalf("sheet %q: %v", name, err)
	}
	for i, r := range rows {
		if len(r) > width {
			t.Errorf("sheet %q row %d has %d cells, the CSV header %d", name, i+1, len(r), width)
			continue
		}
		rows[i] = append(r, make([]string, width-len(r))...)
	}
	return rows
}

// csvSheets are the CSV files of a manifest and their sheet names.
func csvSheets(m evidence.Manifest) (names, sheets []string) {
	for _, f := range m.Files {
		if strings.HasPrefix(f.Name, "csv/") {
			names = append(names, f.Name)
			sheets = append(sheets, strings.TrimSuffix(strings.TrimPrefix(f.Name, "csv/"), ".csv"))
		}
	}
	return names, sheets
}

// TestWorkbook opens report.xlsx as an auditor's spreadsheet would and
// compares it with the rest of the archive: each sheet holds its CSV file's
// header and rows, cell for cell, as text; the summary names every file
// with its hash; the workbook is listed in the manifest.
func TestWorkbook(t *testing.T) {
	store, vkey := buildLog(t)
	files, m := archive(t, store, vkey)
	data := files["report.xlsx"]
	f := openBook(t, data)

	names, sheets := csvSheets(m)
	if len(names) != 7 {
		t.Fatalf("manifest lists %d CSV files: %v", len(names), names)
	}
	if got, want := f.GetSheetList(), append([]string{"summary"}, sheets...); !slices.Equal(got, want) {
		t.Errorf("sheets = %q, want %q", got, want)
	}
	for i, name := range names {
		want := records(t, files[name])
		got := sheet(t, f, sheets[i], len(want[0]))
		if len(got) != len(want) {
			t.Errorf("sheet %s has %d rows, %s %d (header included)", sheets[i], len(got), name, len(want))
		}
		for r := range min(len(got), len(want)) {
			if !slices.Equal(got[r], want[r]) {
				t.Errorf("sheet %s row %d = %q, %s has %q", sheets[i], r+1, got[r], name, want[r])
			}
		}
		// The header is bold and frozen; a hash fits its column.
		panes, err := f.GetPanes(sheets[i])
		if err != nil || !panes.Freeze || panes.YSplit != 1 || panes.TopLeftCell != "A2" {
			t.Errorf("sheet %s: panes %+v, %v; want the header row frozen", sheets[i], panes, err)
		}
		for c := range want[0] {
			cell, _ := excelize.CoordinatesToCellName(c+1, 1)
			if !bold(t, f, sheets[i], cell) {
				t.Errorf("sheet %s: header %s (%s) is not bold", sheets[i], cell, want[0][c])
			}
		}
		if c := slices.Index(want[0], "leaf_hash"); c >= 0 && len(want) > 1 {
			col, _ := excelize.ColumnNumberToName(c + 1)
			if w, err := f.GetColWidth(sheets[i], col); err != nil || w < 64 {
				t.Errorf("sheet %s: leaf_hash column is %v wide (%v); a hash has 64 characters", sheets[i], w, err)
			}
		}
	}

	// A caller-chosen value that a spreadsheet would take for a formula is
	// text, neutralized as in the CSV; no cell of any sheet is a formula or
	// a number.
	if v, _ := f.GetCellValue("activity", "B2"); v != `'=HYPERLINK("http://evil")` {
		t.Errorf("activity B2 = %q, want the neutralized correlation id", v)
	}
	if typ, _ := f.GetCellType("activity", "B2"); typ != excelize.CellTypeInlineString {
		t.Errorf("activity B2 has cell type %v, want an inline string", typ)
	}
	if formula, _ := f.GetCellFormula("activity", "B2"); formula != "" {
		t.Errorf("activity B2 has formula %q", formula)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range zr.File {
		if !strings.HasPrefix(part.Name, "xl/worksheets/") {
			continue
		}
		xml := readPart(t, part)
		if strings.Contains(xml, "<f>") || strings.Contains(xml, "<f ") {
			t.Errorf("%s holds a formula", part.Name)
		}
		if n, text := strings.Count(xml, "<c "), strings.Count(xml, `t="inlineStr"`); n != text {
			t.Errorf("%s: %d of %d cells are not text", part.Name, n-text, n)
		}
	}

	// The summary: scope, verdict, and every file of the manifest with its
	// rows, criteria and hash.
	summary := sheet(t, f, "summary", 7)
	byName := map[string][]string{}
	for _, row := range summary {
		byName[row[0]] = row
	}
	if byName["period from (inclusive)"][1] != m.Period.From || byName["period to (exclusive)"][1] != m.Period.To ||
		!strings.HasPrefix(byName["verification"][1], "passed: ") {
		t.Errorf("summary scope and verdict:\n%q", summary[:7])
	}
	for _, file := range m.Files {
		row, ok := byName[file.Name]
		switch {
		case !ok:
			t.Errorf("the summary does not name %s", file.Name)
		case file.Name == "report.xlsx":
			if row[1] != strconv.Itoa(len(f.GetSheetList())) || row[1] != strconv.Itoa(file.Rows) {
				t.Errorf("summary row of the workbook = %q, it has %d sheets, the manifest says %d", row, len(f.GetSheetList()), file.Rows)
			}
		case row[1] != strconv.Itoa(file.Rows) || row[2] != file.Criteria || row[4] != file.SHA256:
			t.Errorf("summary row %q, the manifest says %+v", row, file)
		}
	}
	if row := byName["csv/activity.csv"]; row[3] != "activity" {
		t.Errorf("summary: activity is on sheets %q", row[3])
	}

	// Listed in the manifest with its hash, dated like the archive.
	listed := slices.IndexFunc(m.Files, func(f evidence.File) bool { return f.Name == "report.xlsx" })
	sum := sha256.Sum256(data)
	if listed < 0 || m.Files[listed].SHA256 != hex.EncodeToString(sum[:]) || m.Files[listed].Rows != 8 {
		t.Errorf("manifest entry of report.xlsx: %+v", m.Files)
	}
	props, err := f.GetDocProps()
	if err != nil || props.Created != "2026-03-03T00:00:00Z" || props.Modified != "2026-03-03T00:00:00Z" {
		t.Errorf("document properties = %+v, %v; want the period's end", props, err)
	}
	if !bytes.Contains(files["VERIFY.md"], []byte("report.xlsx")) {
		t.Error("VERIFY.md does not name report.xlsx")
	}
}

func bold(t *testing.T, f *excelize.File, sheet, cell string) bool {
	t.Helper()
	id, err := f.GetCellStyle(sheet, cell)
	if err != nil {
		t.Fatal(err)
	}
	style, err := f.GetStyle(id)
	if err != nil {
		t.Fatal(err)
	}
	return style.Font != nil && style.Font.Bold
}

func readPart(t *testing.T, part *zip.File) string {
	t.Helper()
	rc, err := part.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWorkbookDeterministic: excelize writes the worksheets of its stream
// writers in map order; the workbook must still be the same bytes every
// time, with its parts in a fixed order.
func TestWorkbookDeterministic(t *testing.T) {
	store, vkey := buildLog(t)
	first, _ := archive(t, store, vkey)
	for range 5 {
		again, _ := archive(t, store, vkey)
		if !bytes.Equal(first["report.xlsx"], again["report.xlsx"]) {
			t.Fatal("two workbooks of the same log and period differ")
		}
	}
	data := first["report.xlsx"]
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, p := range zr.File {
		parts = append(parts, p.Name)
	}
	if !slices.IsSorted(parts) || parts[0] != "[Content_Types].xml" {
		t.Errorf("parts are not in order: %q", parts)
	}
}

// TestWorkbookSheetOverflow: a section with more rows than a sheet takes
// continues on further sheets, each with the header, and no row is lost or
// repeated (the limit is 1,048,575 rows; here 2).
func TestWorkbookSheetOverflow(t *testing.T) {
	defer evidence.SetSheetRows(2)()
	store, vkey := buildLog(t)
	files, m := archive(t, store, vkey)
	f := openBook(t, files["report.xlsx"])
	list := f.GetSheetList()
	names, bases := csvSheets(m)
	summary := map[string][]string{}
	for _, row := range sheet(t, f, "summary", 7) {
		summary[row[0]] = row
	}
	for i, name := range names {
		want := records(t, files[name])
		data := len(want) - 1
		var got [][]string
		var sheets []string
		for n := 1; ; n++ {
			s := bases[i]
			if n > 1 {
				s += " (" + strconv.Itoa(n) + ")"
			}
			if !slices.Contains(list, s) {
				break
			}
			sheets = append(sheets, s)
			rows := sheet(t, f, s, len(want[0]))
			if len(rows) == 0 || !slices.Equal(rows[0], want[0]) {
				t.Errorf("sheet %s does not start with the header of %s", s, name)
				continue
			}
			if len(rows)-1 > 2 || (len(rows)-1 < 2 && (n-1)*2+len(rows)-1 != data) {
				t.Errorf("sheet %s holds %d rows, the limit is 2 and %s has %d", s, len(rows)-1, name, data)
			}
			got = append(got, rows[1:]...)
		}
		if wantSheets := max(1, (data+1)/2); len(sheets) != wantSheets {
			t.Errorf("%s: %d rows on sheets %q, want %d sheets", name, data, sheets, wantSheets)
		}
		if !slices.EqualFunc(got, want[1:], slices.Equal) {
			t.Errorf("%s: the sheets hold\n%q\nthe CSV\n%q", name, got, want[1:])
		}
		if s := summary[name][3]; s != strings.Join(sheets, ", ") {
			t.Errorf("summary: %s is on sheets %q, the workbook has %q", name, s, sheets)
		}
	}
	// The test log has sections of 0, 1, 2 (exactly the limit), 3, 4 and
	// more rows.
	for _, s := range []string{"activity (2)", "credentials (2)", "exceptions (2)"} {
		if !slices.Contains(list, s) {
			t.Errorf("no sheet %s in %q", s, list)
		}
	}
	if slices.Contains(list, "access_population (2)") || slices.Contains(list, "denials (2)") || slices.Contains(list, "changes (2)") {
		t.Errorf("a section within the limit continues on a second sheet: %q", list)
	}
}

// TestWorkbookCellLimits: a value a workbook cannot hold as it is (a
// control character, which XML 1.0 has no way to write; more than 32,767
// characters) is shown as well as a cell can, and says so; the CSV file
// keeps it whole.
func TestWorkbookCellLimits(t *testing.T) {
	store, l, c := openLog(t, day(2, 9))
	long := strings.Repeat("a very long detail. ", 2000) // 40,000 characters
	for _, detail := range []string{"bell\x07 in a detail", long, "tab\tand\nnew line"} {
		if _, err := l.Append(t.Context(), &audit.Record{
			Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load_failed", Detail: detail},
		}); err != nil {
			t.Fatal(err)
		}
	}
	c.set(day(2, 10))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, vkey := audittest.Key(t, origin, 1)
	files, _ := archive(t, store, vkey)
	want := records(t, files["csv/changes.csv"])
	got := sheet(t, openBook(t, files["report.xlsx"]), "changes", len(want[0]))
	if len(got) != len(want) {
		t.Fatalf("sheet changes has %d rows, the CSV file %d", len(got), len(want))
	}
	action, detail := slices.Index(want[0], "action"), slices.Index(want[0], "detail")
	var csvDetails, cells []string
	for i := range want {
		if want[i][action] == "policy_load_failed" {
			csvDetails, cells = append(csvDetails, want[i][detail]), append(cells, got[i][detail])
		}
	}
	if len(cells) != 3 || csvDetails[0] != "bell\x07 in a detail" || csvDetails[1] != long {
		t.Fatalf("the CSV file does not keep the values whole: %q", csvDetails)
	}
	if cells[0] != "bell\uFFFD in a detail" {
		t.Errorf("control character: cell %q", cells[0])
	}
	v := cells[1]
	if n := len(utf16.Encode([]rune(v))); n > excelize.TotalCellChars || !strings.HasSuffix(v, "the CSV file has the whole value]") ||
		!strings.HasPrefix(long, strings.TrimSuffix(v[:strings.LastIndex(v, " [cut:")], " ")) || n < excelize.TotalCellChars-100 {
		t.Errorf("long value: cell of %d UTF-16 units ends %q", n, v[max(0, len(v)-100):])
	}
	if cells[2] != "tab\tand\nnew line" {
		t.Errorf("tab and new line: cell %q", cells[2])
	}
}
