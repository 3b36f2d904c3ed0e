‰£cmd§publish£tgt‘£db1£fun©state.sls£arg‘¥twice¨tgt_type¤list£ret £jid´20261201150438328749¦kwargs‚£rawÂ²gather_job_timeout
¤user¤root