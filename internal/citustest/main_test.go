package citustest_test

import (
	"testing"

	"github.com/tenancykit/tenancy/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
