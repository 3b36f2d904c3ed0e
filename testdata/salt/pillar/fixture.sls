# Every state writes only below this directory (regen.sh wipes it before and after).
fixture_base: /tmp/saltship-fixture
