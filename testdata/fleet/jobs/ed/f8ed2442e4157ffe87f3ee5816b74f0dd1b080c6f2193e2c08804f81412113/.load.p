‰£cmd§publish£tgt‘¦f-web1£fun©state.sls£arg‘¥twice¨tgt_type¤list£ret £jid´20261203103700890022¦kwargs‚£rawÂ²gather_job_timeout
¤user¤root