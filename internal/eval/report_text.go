package eval

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// WriteText writes the report as an aligned, human-readable table in the
// layout of scikit-learn's classification_report (per-class precision,
// recall, F1 and support, then accuracy and the macro and support-weighted
// averages), followed by the confusion matrix with true classes as rows and
// predicted classes as columns.
func (r Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	nameW := len("weighted avg")
	for _, c := range r.PerClass {
		nameW = max(nameW, len(c.Class))
	}
	supportW := max(len("support"), len(strconv.Itoa(r.N)))

	fmt.Fprintf(bw, "%*s %10s %10s %10s %*s\n\n", nameW, "", "precision", "recall", "f1-score", supportW+1, "support")
	var macroP, macroR, weightP, weightR, weightF float64
	for _, c := range r.PerClass {
		fmt.Fprintf(bw, "%*s %10.4f %10.4f %10.4f %*d\n", nameW, c.Class, c.Precision, c.Recall, c.F1, supportW+1, c.Support)
		macroP += c.Precision
		macroR += c.Recall
		s := float64(c.Support)
		weightP += s * c.Precision
		weightR += s * c.Recall
		weightF += s * c.F1
	}
	if k := float64(len(r.PerClass)); k > 0 {
		macroP /= k
		macroR /= k
	}
	if r.N > 0 {
		n := float64(r.N)
		weightP /= n
		weightR /= n
		weightF /= n
	}
	fmt.Fprintln(bw)
	fmt.Fprintf(bw, "%*s %10s %10s %10.4f %*d\n", nameW, "accuracy", "", "", r.Accuracy, supportW+1, r.N)
	fmt.Fprintf(bw, "%*s %10.4f %10.4f %10.4f %*d\n", nameW, "macro avg", macroP, macroR, r.MacroF1, supportW+1, r.N)
	fmt.Fprintf(bw, "%*s %10.4f %10.4f %10.4f %*d\n", nameW, "weighted avg", weightP, weightR, weightF, supportW+1, r.N)

	writeMatrix(bw, r)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("metrics: writing report: %w", err)
	}
	return nil
}

// writeMatrix writes the confusion matrix. Columns are headed by class id
// rather than name so that ten classes fit in an ordinary terminal; each row
// is labelled with both id and name so the header can be decoded.
func writeMatrix(w io.Writer, r Report) {
	k := len(r.Confusion)
	fmt.Fprintf(w, "\nconfusion matrix (rows: true class, columns: predicted class)\n")
	if k == 0 {
		fmt.Fprintf(w, "(no classes)\n")
		return
	}
	idW := len(strconv.Itoa(k - 1))
	nameW := 0
	for i := range k {
		nameW = max(nameW, len(className(r, i)))
	}
	cellW := len(strconv.Itoa(k - 1))
	for _, row := range r.Confusion {
		for _, v := range row {
			cellW = max(cellW, len(strconv.Itoa(v)))
		}
	}
	fmt.Fprintf(w, "%*s", idW+1+nameW, "")
	for p := range k {
		fmt.Fprintf(w, " %*d", cellW+1, p)
	}
	fmt.Fprintln(w)
	for t, row := range r.Confusion {
		fmt.Fprintf(w, "%*d %-*s", idW, t, nameW, className(r, t))
		for _, v := range row {
			fmt.Fprintf(w, " %*d", cellW+1, v)
		}
		fmt.Fprintln(w)
	}
}

// className returns the name of class i, or its id when the report carries
// no per-class entries (a hand-built Report may have only the matrix).
func className(r Report, i int) string {
	if i < len(r.PerClass) {
		return r.PerClass[i].Class
	}
	return strconv.Itoa(i)
}
