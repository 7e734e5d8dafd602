package exec

import (
	"runtime"
	"testing"
)

func TestGoMemoryLimit(t *testing.T) {
	files := fileResident()
	if runtime.GOOS == "linux" && files <= 0 {
		t.Fatalf("fileResident() = %d on Linux: the executable's pages are resident", files)
	}
	const gib = 1 << 30
	if got := goMemoryLimit(gib, files); got != gib-files {
		t.Errorf("goMemoryLimit(1 GiB) = %d, want 1 GiB less the %d file-backed bytes", got, files)
	}
	if files > 0 {
		// A limit the files alone exceed still leaves the runtime a quarter.
		if got := goMemoryLimit(files, files); got != files/4 {
			t.Errorf("goMemoryLimit(%d) = %d, want %d", files, got, files/4)
		}
	}
}
