package evidence

// SetSweepEvery changes how often expired credentials are dropped while the
// log is read, and returns a function that restores it.
func SetSweepEvery(n int) func() {
	old := sweepEvery
	sweepEvery = n
	return func() { sweepEvery = old }
}

// SetSheetRows changes how many data rows a worksheet of report.xlsx takes
// before the section continues on the next sheet, and returns a function
// that restores it.
func SetSheetRows(n int) func() {
	old := sheetRows
	sheetRows = n
	return func() { sheetRows = old }
}
