package train

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestCheckpointHistoryFormat pins the JSON of the history in checkpoints:
// checkpoints written before EpochStats existed (when the chart's type was
// stored) must still resume, and new ones must read the same.
func TestCheckpointHistoryFormat(t *testing.T) {
	const stored = `[{"Epoch":1,"TrainLoss":0.5,"TrainAcc":0.8,"TestAcc":0.75,"LR":0.1},{"Epoch":2,"TrainLoss":0.25,"TrainAcc":0.9,"TestAcc":0.85,"LR":0.05}]`
	var h []EpochStats
	if err := json.Unmarshal([]byte(stored), &h); err != nil {
		t.Fatal(err)
	}
	want := []EpochStats{
		{Epoch: 1, TrainLoss: 0.5, TrainAcc: 0.8, TestAcc: 0.75, LR: 0.1},
		{Epoch: 2, TrainLoss: 0.25, TrainAcc: 0.9, TestAcc: 0.85, LR: 0.05},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("decoded %+v, want %+v", h, want)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != stored {
		t.Errorf("encoded %s, want the stored form %s", b, stored)
	}
}
