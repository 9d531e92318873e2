package evidence

import (
	"archive/zip"
	"bufio"
	"cmp"
	"compress/flate"
	"encoding/csv"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// The archive's workbook: the CSV sections as worksheets.
const (
	workbookName        = "report.xlsx"
	workbookDescription = "the workbook: a summary sheet (scope, verification, every file with its rows, criteria and SHA-256), " +
		"then one sheet per CSV file with the same header and rows, continued on further sheets past 1,048,575 rows; the CSV files remain the source"
	workbookSelection = "the rows of the CSV files of this archive, and this manifest"
)

// sheetRows is how many data rows a worksheet takes below its header row (a
// worksheet has at most 1,048,576 rows); a section with more continues on
// further sheets. A variable for the tests.
var sheetRows = excelize.TotalRows - 1

// Column widths, in characters: from the header and the first rows of a
// section, within bounds (a hex SHA-256 fits the widest).
const (
	widthSample = 200
	minWidth    = 8
	maxWidth    = 66
)

// cutNote ends a value too long for a cell (32,767 UTF-16 code units).
const cutNote = " [cut: longer than a spreadsheet cell holds; the CSV file has the whole value]"

// cellText is a CSV value as a workbook cell shows it. XML 1.0, the format
// of a workbook, cannot hold control characters other than tab, line feed
// and carriage return: they, and bytes that are not UTF-8, become U+FFFD. A
// value longer than a cell holds is cut, and says so. Any other value is
// unchanged.
func cellText(v string) string {
	clean := true
	for _, r := range v {
		if !xmlChar(r) {
			clean = false
			break
		}
	}
	if !clean {
		v = strings.Map(func(r rune) rune {
			if xmlChar(r) {
				return r
			}
			return utf8.RuneError
		}, strings.ToValidUTF8(v, string(utf8.RuneError)))
	}
	if len(v) <= excelize.TotalCellChars || utf16Len(v) <= excelize.TotalCellChars {
		return v
	}
	room, end := excelize.TotalCellChars-len(cutNote), 0
	for i, r := range v {
		if room -= utf16.RuneLen(r); room < 0 {
			break
		}
		end = i + utf8.RuneLen(r)
	}
	return v[:end] + cutNote
}

// xmlChar reports whether XML 1.0 can hold r. U+FFFD itself stands for a
// byte that is not UTF-8 as well.
func xmlChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xd7ff) || (r >= 0xe000 && r <= 0xfffd && r != utf8.RuneError) || (r >= 0x10000 && r <= utf8.MaxRune)
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// sheetNames are the worksheets of a CSV section: its file name without
// the extension, then "name (2)" and so on when it has more rows than a
// sheet takes.
func sheetNames(sec *section) []string {
	base := strings.TrimSuffix(path.Base(sec.name), ".csv")
	names := []string{base}
	for i := 2; (i-1)*sheetRows < sec.rows; i++ {
		names = append(names, base+" ("+strconv.Itoa(i)+")")
	}
	return names
}

// writeWorkbook writes report.xlsx to a new section in dir and returns it,
// done: a summary sheet with the facts of m (the files written so far),
// then every CSV section's rows, read back from its file, on its own
// sheets. Every value is a text cell, never a formula or a number, as the
// CSV file has it (see [cellText]). The document's dates are modified and
// its parts are in a fixed order, so the same sections give the same bytes.
// Worksheets are written with excelize's stream writer, which keeps at most
// 16 MB of each in memory and the rest in temporary files in dir.
func writeWorkbook(dir string, m *Manifest, sections []*section, modified time.Time) (_ *section, err error) {
	book, err := newFileSection(dir, workbookName, workbookDescription, workbookSelection)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = book.file.Close() // the directory is removed
		}
	}()
	f := excelize.NewFile(excelize.Options{TmpDir: dir})
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	stamp := modified.UTC().Format(time.RFC3339)
	if err := f.SetDocProps(&excelize.DocProperties{
		Creator: "sqlgate", LastModifiedBy: "sqlgate", Created: stamp, Modified: stamp,
		Title: cellText("sqlgate access evidence " + m.Period.From + " to " + m.Period.To),
	}); err != nil {
		return nil, err
	}
	bold, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	if err != nil {
		return nil, err
	}
	w := &bookWriter{f: f, bold: bold}
	var csvs []*section
	for _, sec := range sections {
		if sec.csv != nil {
			csvs = append(csvs, sec)
		}
	}
	if err := w.summary(m, csvs); err != nil {
		return nil, err
	}
	for _, sec := range csvs {
		if err := w.section(sec); err != nil {
			return nil, fmt.Errorf("evidence %s: %s: %w", workbookName, sec.name, err)
		}
	}
	// excelize hands its zip writer an in-memory buffer; the spool writes
	// to the section's file instead, so the workbook is never held whole.
	spool := &partSpool{w: book.buf, dir: dir}
	defer spool.remove()
	f.SetZipWriter(func(io.Writer) excelize.ZipWriter { return spool })
	if err := f.Write(io.Discard); err != nil {
		return nil, fmt.Errorf("evidence %s: %w", workbookName, err)
	}
	book.rows = len(f.GetSheetList())
	return book, book.done()
}

// bookWriter writes the sheets of the workbook.
type bookWriter struct {
	f    *excelize.File
	bold int
	row  []any // reused by put
}

// put writes one row of text cells, in bold when header is set; an empty
// value leaves its cell empty.
func (w *bookWriter) put(sw *excelize.StreamWriter, row int, header bool, cells []string) error {
	w.row = w.row[:0]
	for _, c := range cells {
		switch {
		case c == "":
			w.row = append(w.row, nil) // no cell
		case header:
			w.row = append(w.row, excelize.Cell{StyleID: w.bold, Value: cellText(c)})
		default:
			w.row = append(w.row, cellText(c))
		}
	}
	return sw.SetRow("A"+strconv.Itoa(row), w.row)
}

// sheet starts a worksheet (the first one, "Sheet1", is renamed) with its
// column widths.
func (w *bookWriter) sheet(name string, widths []float64) (*excelize.StreamWriter, error) {
	if list := w.f.GetSheetList(); len(list) == 1 && list[0] == "Sheet1" {
		if err := w.f.SetSheetName("Sheet1", name); err != nil {
			return nil, err
		}
	} else if _, err := w.f.NewSheet(name); err != nil {
		return nil, err
	}
	sw, err := w.f.NewStreamWriter(name)
	if err != nil {
		return nil, err
	}
	// excelize puts a column set later before those set earlier: set from
	// the last, so the worksheet lists them in order, as the format wants.
	for i := len(widths) - 1; i >= 0; i-- {
		if err := sw.SetColWidth(i+1, i+1, widths[i]); err != nil {
			return nil, err
		}
	}
	return sw, nil
}

// summary writes the first sheet: what the manifest and the report say.
func (w *bookWriter) summary(m *Manifest, csvs []*section) error {
	sw, err := w.sheet("summary", []float64{28, 16, 20, 24, maxWidth, 60, 60})
	if err != nil {
		return err
	}
	v := m.Verification
	sheets := 1
	sheetsOf := map[string]string{}
	for _, sec := range csvs {
		names := sheetNames(sec)
		sheets += len(names)
		sheetsOf[sec.name] = strings.Join(names, ", ")
	}
	type line struct {
		header bool
		cells  []string
	}
	lines := []line{
		{true, []string{"sqlgate access evidence"}},
		{false, []string{"period from (inclusive)", m.Period.From}},
		{false, []string{"period to (exclusive)", m.Period.To}},
		{false, []string{"generator", m.Generator}},
		{false, []string{"format", m.Format}},
		{false, []string{"verification", fmt.Sprintf("passed: %d records verified with keys %s; %d trusted checkpoint copies checked",
			v.Records, strings.Join(v.Keys, ", "), v.TrustedCopies)}},
		{false, []string{"source", "The CSV files of this archive hold every row exactly; the other sheets of this workbook show the same rows. " +
			"manifest.json lists the SHA-256 of every file, this workbook included: check them with sqlgate audit check-evidence (VERIFY.md)."}},
	}
	if v.TrustedCopies == 0 {
		lines = append(lines, line{false, []string{"WARNING", NoTrustedCopy}})
	}
	for _, s := range m.Incomplete {
		lines = append(lines, line{false, []string{"INCOMPLETE", s}})
	}
	lines = append(lines, []line{
		{},
		{true, []string{"log origin", "records read", "records in period", "checkpoint size", "checkpoint root", "signed by"}},
	}...)
	for _, o := range m.Origins {
		inPeriod := "none"
		if o.PeriodFirst >= 0 {
			inPeriod = fmt.Sprintf("%d to %d", o.PeriodFirst, o.PeriodLast)
		}
		lines = append(lines, line{false, []string{
			o.Origin, fmt.Sprintf("%d to %d", o.First, o.End-1), inPeriod,
			strconv.FormatInt(o.CheckpointSize, 10), o.CheckpointRoot, strings.Join(o.KeyIDs, " "),
		}})
	}
	lines = append(lines, line{}, line{true, []string{"exception", "count"}})
	if len(v.ExceptionCount) == 0 {
		lines = append(lines, line{false, []string{"none", "0"}})
	}
	for _, code := range slices.Sorted(maps.Keys(v.ExceptionCount)) {
		lines = append(lines, line{false, []string{code, strconv.FormatInt(v.ExceptionCount[code], 10)}})
	}
	lines = append(lines, line{}, line{true, []string{"file", "rows", "criteria", "sheets", "sha256", "content", "selection"}})
	for _, f := range m.Files {
		lines = append(lines, line{false, []string{f.Name, strconv.Itoa(f.Rows), f.Criteria, sheetsOf[f.Name], f.SHA256, f.Description, f.Selection}})
	}
	lines = append(lines, line{false, []string{
		workbookName, strconv.Itoa(sheets), "", "all", "in manifest.json (a file cannot hold its own hash)",
		workbookDescription, workbookSelection,
	}})
	for i, l := range lines {
		if l.cells == nil {
			continue
		}
		if err := w.put(sw, i+1, l.header, l.cells); err != nil {
			return err
		}
	}
	return sw.Flush()
}

// section writes a CSV section's sheets: its header row, bold and frozen,
// then its rows, as many as a sheet takes, then the next sheet. The rows are
// read back from the CSV file as a CSV reader sees them, so the sheets show
// what the file holds.
func (w *bookWriter) section(sec *section) error {
	file, err := os.Open(sec.path)
	if err != nil {
		return err
	}
	defer func() { _ = file.Close() }() // read-only
	r := csv.NewReader(bufio.NewReader(file))
	header, err := r.Read()
	if err != nil {
		return err
	}
	// The first rows set the column widths; they are written first.
	var ahead [][]string
	for len(ahead) < widthSample {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		ahead = append(ahead, rec)
	}
	r.ReuseRecord = true
	next := func() ([]string, error) {
		if len(ahead) > 0 {
			rec := ahead[0]
			ahead = ahead[1:]
			return rec, nil
		}
		return r.Read()
	}
	widths := columnWidths(header, ahead)
	names := sheetNames(sec)
	written := 0
	for _, name := range names {
		sw, err := w.sheet(name, widths)
		if err != nil {
			return err
		}
		if err := sw.SetPanes(&excelize.Panes{
			Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft",
			Selection: []excelize.Selection{{SQRef: "A2", ActiveCell: "A2", Pane: "bottomLeft"}},
		}); err != nil {
			return err
		}
		if err := w.put(sw, 1, true, header); err != nil {
			return err
		}
		n := min(sheetRows, sec.rows-written)
		for i := range n {
			rec, err := next()
			if err != nil {
				return fmt.Errorf("row %d of %d: %w", written+1, sec.rows, err)
			}
			if err := w.put(sw, i+2, false, rec); err != nil {
				return err
			}
			written++
		}
		if n > 0 {
			// Numbers are text here, as in the CSV file: no warning for it.
			last, err := excelize.CoordinatesToCellName(len(header), n+1)
			if err != nil {
				return err
			}
			if err := w.f.AddIgnoredErrors(name, "A2:"+last, excelize.IgnoredErrorsNumberStoredAsText); err != nil {
				return err
			}
		}
		if err := sw.Flush(); err != nil {
			return err
		}
	}
	switch _, err := next(); {
	case err == nil:
		return fmt.Errorf("more rows than the %d counted", sec.rows)
	case !errors.Is(err, io.EOF):
		return err
	}
	return nil
}

// columnWidths fit the header and the sampled rows, within bounds.
func columnWidths(header []string, rows [][]string) []float64 {
	widths := make([]float64, len(header))
	for i, h := range header {
		n := utf8.RuneCountInString(h) + 1 // bold is wider
		for _, row := range rows {
			if i < len(row) {
				n = max(n, utf8.RuneCountInString(row[i]))
			}
		}
		widths[i] = float64(min(max(n+2, minWidth), maxWidth))
	}
	return widths
}

// partSpool is the zip writer excelize saves the workbook with. excelize
// writes the worksheets of its stream writers in the order of a Go map,
// which changes from run to run: partSpool compresses each part into a
// temporary file as it comes and, on Close, writes the parts to w sorted by
// name ("[Content_Types].xml" first), so the same workbook gives the same
// bytes. Parts carry no time, as excelize writes them; the document's dates
// are in docProps/core.xml.
type partSpool struct {
	w     io.Writer
	dir   string
	tmp   *os.File
	out   *countWriter // over tmp
	fw    *flate.Writer
	parts []*spooledPart
	cur   *spooledPart
}

// spooledPart is one compressed part in the temporary file.
type spooledPart struct {
	name       string
	crc        hash.Hash32
	size       uint64
	start, end int64
}

// spoolWriter feeds the current part: its checksum, size and compressor.
type spoolWriter struct{ z *partSpool }

func (s spoolWriter) Write(b []byte) (int, error) {
	p := s.z.cur
	_, _ = p.crc.Write(b) // a hash does not fail
	p.size += uint64(len(b))
	return s.z.fw.Write(b)
}

// countWriter counts what it writes.
type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// Create starts a part; excelize writes it before the next Create.
func (z *partSpool) Create(name string) (io.Writer, error) {
	if err := z.endPart(); err != nil {
		return nil, err
	}
	if z.tmp == nil {
		tmp, err := os.CreateTemp(z.dir, "xlsx-parts-*")
		if err != nil {
			return nil, err
		}
		z.tmp, z.out = tmp, &countWriter{w: bufio.NewWriter(tmp)}
		if z.fw, err = flate.NewWriter(z.out, flate.DefaultCompression); err != nil {
			return nil, err
		}
	} else {
		z.fw.Reset(z.out)
	}
	z.cur = &spooledPart{name: name, crc: crc32.NewIEEE(), start: z.out.n}
	z.parts = append(z.parts, z.cur)
	return spoolWriter{z}, nil
}

func (z *partSpool) endPart() error {
	if z.cur == nil {
		return nil
	}
	if err := z.fw.Close(); err != nil {
		return err
	}
	z.cur.end, z.cur = z.out.n, nil
	return nil
}

// AddFS is part of excelize's interface; it does not save through it.
func (z *partSpool) AddFS(fs.FS) error {
	return errors.New("evidence: the workbook's zip writer takes parts one by one")
}

// Close writes the parts, sorted by name, as the zip archive.
func (z *partSpool) Close() error {
	if err := z.endPart(); err != nil {
		return err
	}
	zw := zip.NewWriter(z.w)
	if z.tmp != nil {
		if err := z.out.w.Flush(); err != nil {
			return err
		}
	}
	slices.SortFunc(z.parts, func(a, b *spooledPart) int { return cmp.Compare(a.name, b.name) })
	for i, p := range z.parts {
		if i > 0 && z.parts[i-1].name == p.name {
			return fmt.Errorf("evidence: the workbook has two parts named %s", p.name)
		}
		pw, err := zw.CreateRaw(&zip.FileHeader{
			Name: p.name, Method: zip.Deflate, CRC32: p.crc.Sum32(),
			CompressedSize64: uint64(p.end - p.start), UncompressedSize64: p.size,
		})
		if err != nil {
			return err
		}
		if _, err := io.Copy(pw, io.NewSectionReader(z.tmp, p.start, p.end-p.start)); err != nil {
			return err
		}
	}
	return zw.Close()
}

// remove deletes the temporary file.
func (z *partSpool) remove() {
	if z.tmp != nil {
		_ = z.tmp.Close()           // read and written
		_ = os.Remove(z.tmp.Name()) // the directory is removed anyway
	}
}
