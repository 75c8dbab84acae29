package demo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The row seed step 5 inserts, as Pets prints it.
const PetRow = "Fluffy Poodle"

// StepError says which step of the walkthrough failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// ErrRowLost: after the handoff the table does not hold the row step 5
// inserted.
var ErrRowLost = errors.New("the row did not come back")

// ErrVolumeChanged: after the handoff the task's data is on another EBS
// volume than before, or the volume is not attached where the task runs.
var ErrVolumeChanged = errors.New("the volume did not follow the task")

// Result is what the MySQL walkthrough saw.
type Result struct {
	TaskDefinitionArn, ServiceArn string
	First, Second                 Task   // the task before and after the drain
	VolumeBefore, VolumeAfter     Volume // rexray-vol while First and Second ran
	Rows                          []string

	FirstRunning   time.Duration // create-service → first task RUNNING
	FirstAnswering time.Duration // → MySQL answering (includes initialising the database)
	DrainedAt      time.Time     // update-container-instances-state answered
	OldStopped     time.Duration // drain → first task STOPPED (ECS's stoppedAt)
	NewRunning     time.Duration // drain → replacement RUNNING (seen)
	Handoff        time.Duration // drain → replacement RUNNING with MySQL answering
	CleanedUp      bool          // the seed's cleanup ran to the end
}

// RunMySQL replays the seed with its own task definition (driver tether,
// image mysql): steps 2 to 7 and the cleanup. The error is a *StepError
// naming the step that failed; Result holds what was seen until then.
func (wt *Walkthrough) RunMySQL(ctx context.Context) (Result, error) {
	var r Result
	p := wt.Progress
	fail := func(step string, err error) (Result, error) { return r, &StepError{Step: step, Err: err} }

	p.Step("Seed step 2: export the stack's outputs (get-outputs.sh)")
	if err := wt.Outputs(ctx); err != nil {
		return fail("seed step 2 (get-outputs.sh)", err)
	}

	p.Step(`Seed step 3: the task definition, "driver": "rexray/ebs" changed to "driver": "tether"`)
	var err error
	if r.TaskDefinitionArn, err = wt.TaskDefinition(ctx, nil); err != nil {
		return fail("seed step 3 (register-task-definition)", err)
	}
	if vols, err := wt.TaskDefinitionVolumes(); err == nil {
		p.Say("%s: the volume the task asks for:\n%s", TaskDefFile, vols)
	}
	p.Say("TaskDefinitionArn=%s", r.TaskDefinitionArn)

	p.Step("Seed step 4: the service (create-service)")
	created := time.Now()
	if r.ServiceArn, err = wt.Service(ctx); err != nil {
		return fail("seed step 4 (create-service)", err)
	}
	p.Say("SvcDefinitionArn=%s", r.ServiceArn)
	if r.First, _, err = wt.FirstTask(ctx); err != nil {
		return fail("seed step 4 (the first task)", err)
	}
	r.FirstRunning = time.Since(created)
	password, err := TaskDefinitionPassword(filepath.Join(wt.Session.Dir(), TaskDefFile))
	if err != nil {
		return fail("seed step 5", err)
	}
	db := MySQL{Password: password}
	if _, err := p.Wait(ctx, "MySQL to answer on 127.0.0.1:3306 (a new database initialises first)", TaskLimit, db.Answers()); err != nil {
		return fail("seed step 5 (MySQL answering)", err)
	}
	r.FirstAnswering = time.Since(created)

	p.Step("Seed step 5: create the database and the table, insert a row (mariadb client, 127.0.0.1:3306)")
	p.Say("$ mariadb --host=127.0.0.1 --port=3306 --user=root --table --verbose < step5.sql   # the seed's statements; MYSQL_PWD from %s", TaskDefFile)
	out, err := db.Run(ctx, string(Seed("step5.sql")), "--table", "--verbose")
	p.Say("%s", indent(out))
	if err != nil {
		return fail("seed step 5 (SQL)", err)
	}
	if rows, err := db.Pets(ctx); err != nil || !slices.Equal(rows, []string{PetRow}) {
		return fail("seed step 5 (SQL)", fmt.Errorf("rexraydb.pets holds %q (%v), want %q", rows, err, PetRow))
	}
	if r.VolumeBefore, err = wt.Volume(ctx); err != nil {
		return fail("seed step 5 (the volume)", err)
	}
	if r.VolumeBefore.InstanceID != r.First.InstanceID {
		return fail("seed step 5 (the volume)", fmt.Errorf("%w: %s, the task runs on %s", ErrVolumeChanged, r.VolumeBefore, r.First.InstanceID))
	}
	if err := wt.ShowVolume(ctx); err != nil {
		return fail("seed step 5 (describe-volumes)", err)
	}
	p.Say("the task %s runs on %s; its data is on %s", shortID(r.First.ID), r.First.InstanceID, r.VolumeBefore.ID)

	p.Step("Seed step 6: drain the instance (drain-instance.sh)")
	if r.DrainedAt, err = wt.Drain(ctx); err != nil {
		return fail("seed step 6 (drain-instance.sh)", err)
	}
	if r.Second, _, err = wt.Replacement(ctx, r.First); err != nil {
		return fail("seed step 6 (the replacement task)", err)
	}
	r.NewRunning = time.Since(r.DrainedAt)
	if _, err := p.Wait(ctx, "MySQL to answer again, from the replacement task", TaskLimit, db.Answers()); err != nil {
		return fail("seed step 7 (MySQL answering)", err)
	}
	r.Handoff = time.Since(r.DrainedAt)
	if tasks, err := wt.Watch.ServiceTasks(ctx, ServiceName); err == nil {
		for _, t := range tasks {
			if t.Arn == r.First.Arn && !t.StoppedAt.IsZero() {
				r.OldStopped = t.StoppedAt.Sub(r.DrainedAt)
			}
		}
	}

	p.Step("Seed step 7: reconnect and select (mariadb client)")
	p.Say("$ mariadb --host=127.0.0.1 --port=3306 --user=root --table --verbose < step7.sql   # USE rexraydb; SELECT * FROM pets;")
	out, err = db.Run(ctx, string(Seed("step7.sql")), "--table", "--verbose")
	p.Say("%s", indent(out))
	if err != nil {
		return fail("seed step 7 (SQL)", fmt.Errorf("%w: %w", ErrRowLost, err))
	}
	if r.Rows, err = db.Pets(ctx); err != nil || !slices.Contains(r.Rows, PetRow) {
		return fail("seed step 7 (SQL)", fmt.Errorf("%w: rexraydb.pets holds %q (%v)", ErrRowLost, r.Rows, err))
	}
	if r.VolumeAfter, err = wt.Volume(ctx); err != nil {
		return fail("seed step 7 (the volume)", err)
	}
	if r.VolumeAfter.ID != r.VolumeBefore.ID || r.VolumeAfter.InstanceID != r.Second.InstanceID {
		return fail("seed step 7 (the volume)", fmt.Errorf("%w: before %s, now %s, the task runs on %s",
			ErrVolumeChanged, r.VolumeBefore, r.VolumeAfter, r.Second.InstanceID))
	}
	if err := wt.ShowVolume(ctx); err != nil {
		return fail("seed step 7 (describe-volumes)", err)
	}
	p.Say("the row is back: the task %s runs on %s, with the same %s attached there",
		shortID(r.Second.ID), r.Second.InstanceID, r.VolumeAfter.ID)

	p.Step("Clean up as the seed does: delete the service, then the volume it leaves available")
	if err := wt.CleanUp(ctx); err != nil {
		return fail("cleanup", err)
	}
	r.CleanedUp = true
	return r, nil
}

// indent indents every line of s by four more spaces.
func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return strings.ReplaceAll(s, "\n", "\n    ")
}
