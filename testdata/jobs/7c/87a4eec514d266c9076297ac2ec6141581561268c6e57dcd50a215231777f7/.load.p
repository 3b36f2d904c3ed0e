â£cmdßpublish£tgtí§web1£db1£fun©test.ping£argê®tgt_type§list£ret†£jid¥20261201150438127368¶kwargsÇ≤gather_job_timeout
Æyield_pub_data√§user§root