â£cmdßpublish£tgtì¶f-web1¶f-web2¶f-down£fun©test.ping£argê®tgt_type§list£ret†£jid¥20261203103640573301¶kwargsÇ≤gather_job_timeout
Æyield_pub_data√§user§root